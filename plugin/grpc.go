package plugin

import (
	"context"
	"errors"
	"fmt"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/plugin/pluginv1"
)

// maxMsgSize bounds one gRPC message either way (a batch of alerts or of patches).
// gRPC's default of 4 MiB is too small for 500 alerts with large sources.
const maxMsgSize = 256 << 20

// grpcPlugin is the go-plugin glue: it registers the server side in the plugin process
// and dispenses the client side in the host.
type grpcPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	impl Enricher // plugin side only
}

var _ goplugin.GRPCPlugin = (*grpcPlugin)(nil)

// GRPCServer implements goplugin.GRPCPlugin.
func (p *grpcPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	pluginv1.RegisterEnricherServer(s, &grpcServer{impl: p.impl})
	return nil
}

// GRPCClient implements goplugin.GRPCPlugin.
func (p *grpcPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &grpcClient{c: pluginv1.NewEnricherClient(c)}, nil
}

// grpcServer adapts an Enricher to the generated gRPC server interface.
type grpcServer struct {
	pluginv1.UnimplementedEnricherServer
	impl Enricher
}

func (s *grpcServer) Configure(ctx context.Context, req *pluginv1.ConfigureRequest) (*pluginv1.ConfigureResponse, error) {
	cfg, err := configFromProto(req)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "decode config: %v", err)
	}
	if err := s.impl.Configure(ctx, cfg); err != nil {
		return nil, toStatus(ctx, err)
	}
	return &pluginv1.ConfigureResponse{}, nil
}

func (s *grpcServer) Describe(ctx context.Context, _ *pluginv1.DescribeRequest) (*pluginv1.DescribeResponse, error) {
	info, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return infoToProto(info), nil
}

func (s *grpcServer) Enrich(ctx context.Context, req *pluginv1.EnrichRequest) (*pluginv1.EnrichResponse, error) {
	alerts, err := enrichRequestFromProto(req)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "decode alerts: %v", err)
	}
	patches, err := s.impl.Enrich(ctx, alerts)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	resp, err := enrichResponseToProto(patches)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	return resp, nil
}

// toStatus keeps context errors recognisable on the host side.
func toStatus(ctx context.Context, err error) error {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Unknown, err.Error())
}

// grpcClient adapts the generated gRPC client to Enricher, on the host side. Errors are
// gRPC status errors; the host classifies them.
type grpcClient struct {
	c pluginv1.EnricherClient
}

var _ Enricher = (*grpcClient)(nil)

func (c *grpcClient) Configure(ctx context.Context, cfg map[string]any) error {
	req, err := configToProto(cfg)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	_, err = c.c.Configure(ctx, req, grpc.MaxCallSendMsgSize(maxMsgSize))
	return err
}

func (c *grpcClient) Describe(ctx context.Context) (Info, error) {
	resp, err := c.c.Describe(ctx, &pluginv1.DescribeRequest{})
	if err != nil {
		return Info{}, err
	}
	return infoFromProto(resp), nil
}

func (c *grpcClient) Enrich(ctx context.Context, alerts []*enrich.Alert) ([]enrich.Patch, error) {
	req, err := enrichRequestToProto(alerts)
	if err != nil {
		return nil, err
	}
	resp, err := c.c.Enrich(ctx, req, grpc.MaxCallSendMsgSize(maxMsgSize), grpc.MaxCallRecvMsgSize(maxMsgSize))
	if err != nil {
		return nil, err
	}
	return enrichResponseFromProto(resp)
}
