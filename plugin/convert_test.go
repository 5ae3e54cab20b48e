package plugin

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/plugin/pluginv1"
)

// roundTrips converts each protocol message to its domain type and back. Every message
// of the proto file must have an entry; TestConvertEveryField fails otherwise.
var roundTrips = map[protoreflect.FullName]func(proto.Message) (proto.Message, error){
	"enricher.plugin.v1.ConfigureRequest": func(m proto.Message) (proto.Message, error) {
		cfg, err := configFromProto(m.(*pluginv1.ConfigureRequest))
		if err != nil {
			return nil, err
		}
		return configToProto(cfg)
	},
	"enricher.plugin.v1.ConfigureResponse": func(proto.Message) (proto.Message, error) {
		return &pluginv1.ConfigureResponse{}, nil
	},
	"enricher.plugin.v1.DescribeRequest": func(proto.Message) (proto.Message, error) {
		return &pluginv1.DescribeRequest{}, nil
	},
	"enricher.plugin.v1.DescribeResponse": func(m proto.Message) (proto.Message, error) {
		return infoToProto(infoFromProto(m.(*pluginv1.DescribeResponse))), nil
	},
	"enricher.plugin.v1.Alert": func(m proto.Message) (proto.Message, error) {
		a, err := alertFromProto(m.(*pluginv1.Alert))
		if err != nil {
			return nil, err
		}
		return alertToProto(a)
	},
	"enricher.plugin.v1.EnrichRequest": func(m proto.Message) (proto.Message, error) {
		alerts, err := enrichRequestFromProto(m.(*pluginv1.EnrichRequest))
		if err != nil {
			return nil, err
		}
		return enrichRequestToProto(alerts)
	},
	"enricher.plugin.v1.Patch": func(m proto.Message) (proto.Message, error) {
		p, err := patchFromProto(m.(*pluginv1.Patch))
		if err != nil {
			return nil, err
		}
		return patchToProto(p)
	},
	"enricher.plugin.v1.EnrichResponse": func(m proto.Message) (proto.Message, error) {
		patches, err := enrichResponseFromProto(m.(*pluginv1.EnrichResponse))
		if err != nil {
			return nil, err
		}
		return enrichResponseToProto(patches)
	},
}

// TestConvertEveryField fills every field of every message of the protocol (by
// reflection, so a field added to the proto is covered without touching this test),
// converts to the domain type and back, and requires the same message. A new field
// without a converter comes back empty and fails the test.
func TestConvertEveryField(t *testing.T) {
	msgs := pluginv1.File_enricher_plugin_v1_plugin_proto.Messages()
	seen := map[protoreflect.FullName]bool{}
	for i := 0; i < msgs.Len(); i++ {
		md := msgs.Get(i)
		seen[md.FullName()] = true
		t.Run(string(md.Name()), func(t *testing.T) {
			rt, ok := roundTrips[md.FullName()]
			if !ok {
				t.Fatalf("no round trip for message %s: add converters and an entry in roundTrips", md.FullName())
			}
			mt, err := protoTypeOf(md)
			if err != nil {
				t.Fatal(err)
			}
			in := mt.New()
			fill(t, in, 0)
			got, err := rt(in.Interface())
			if err != nil {
				t.Fatalf("round trip: %v", err)
			}
			if d := cmpDiff(in.Interface(), got); d != "" {
				t.Errorf("round trip lost data:\n%s", d)
			}
		})
	}
	for name := range roundTrips {
		if !seen[name] {
			t.Errorf("roundTrips lists %s, which the proto file does not define", name)
		}
	}
}

func protoTypeOf(md protoreflect.MessageDescriptor) (protoreflect.MessageType, error) {
	for _, m := range []proto.Message{
		&pluginv1.ConfigureRequest{}, &pluginv1.ConfigureResponse{}, &pluginv1.DescribeRequest{},
		&pluginv1.DescribeResponse{}, &pluginv1.Alert{}, &pluginv1.EnrichRequest{},
		&pluginv1.Patch{}, &pluginv1.EnrichResponse{},
	} {
		if m.ProtoReflect().Descriptor().FullName() == md.FullName() {
			return m.ProtoReflect().Type(), nil
		}
	}
	return nil, fmt.Errorf("message %s: add it to protoTypeOf", md.FullName())
}

// fill sets every field of m to a distinct non-zero value. Bytes fields carry JSON
// objects, as the protocol requires.
func fill(t *testing.T, m protoreflect.Message, depth int) {
	t.Helper()
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.IsMap() {
			t.Fatalf("field %s: maps are not supported by fill; extend it", fd.FullName())
		}
		if fd.IsList() {
			l := m.Mutable(fd).List()
			for j := 0; j < 2; j++ {
				if fd.Kind() == protoreflect.MessageKind {
					e := l.NewElement()
					fill(t, e.Message(), depth+1)
					l.Append(e)
				} else {
					l.Append(scalar(t, fd, j))
				}
			}
			continue
		}
		if fd.Kind() == protoreflect.MessageKind {
			fill(t, m.Mutable(fd).Message(), depth+1)
			continue
		}
		m.Set(fd, scalar(t, fd, depth))
	}
}

func scalar(t *testing.T, fd protoreflect.FieldDescriptor, n int) protoreflect.Value {
	t.Helper()
	name := string(fd.Name())
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("%s-%d", name, n))
	case protoreflect.BytesKind:
		b, _ := json.Marshal(map[string]any{name: map[string]any{"n": n + 1, "s": "v"}})
		return protoreflect.ValueOfBytes(b)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(1<<53 + 7 + n)) // beyond float64 precision
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(7 + n))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(7 + n))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(7 + n))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(1.5)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(1.5)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(fd.Enum().Values().Get(fd.Enum().Values().Len() - 1).Number())
	}
	t.Fatalf("field %s: kind %s not supported by fill; extend it", fd.FullName(), fd.Kind())
	return protoreflect.Value{}
}

func cmpDiff(a, b proto.Message) string {
	if proto.Equal(a, b) {
		return ""
	}
	return fmt.Sprintf("in:  %v\nout: %v", a, b)
}

func TestDecodeObject(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]any
		wantErr  bool
	}{
		{name: "empty", in: "", want: nil},
		{name: "null", in: "null", want: nil},
		{name: "object", in: `{"a":{"b":1}}`, want: map[string]any{"a": map[string]any{"b": json.Number("1")}}},
		{name: "big int keeps precision", in: `{"n":9007199254740993}`, want: map[string]any{"n": json.Number("9007199254740993")}},
		{name: "array", in: `[1]`, wantErr: true},
		{name: "string", in: `"x"`, wantErr: true},
		{name: "trailing", in: `{} {}`, wantErr: true},
		{name: "broken", in: `{"a":`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeObject([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestProject(t *testing.T) {
	src := map[string]any{
		"host":          map[string]any{"name": "WS-1", "ip": []any{"10.0.0.1", "10.0.0.2"}},
		"host.hostname": "ws-1.corp",
		"user":          map[string]any{"name": "alice"},
	}
	for _, tc := range []struct {
		name   string
		fields []string
		want   map[string]any
	}{
		{name: "no fields keeps all", fields: nil, want: src},
		{name: "nested and dotted", fields: []string{"host.name", "host.hostname"},
			want: map[string]any{"host.name": "WS-1", "host.hostname": "ws-1.corp"}},
		{name: "array", fields: []string{"host.ip"}, want: map[string]any{"host.ip": []any{"10.0.0.1", "10.0.0.2"}}},
		{name: "missing", fields: []string{"process.name"}, want: map[string]any{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := project(src, tc.fields)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
			for _, f := range tc.fields {
				if a, b := enrich.Values(got, f), enrich.Values(src, f); !reflect.DeepEqual(a, b) {
					t.Errorf("Values(%s) = %v after projection, %v before", f, a, b)
				}
			}
		})
	}
}
