#!/usr/bin/env bash
# Add a file-realm role and user to the security-enabled Elasticsearch that es-up.sh
# started on $ES_PORT (ES_SECURITY=true). The file realm re-reads its files within ~5 s.
#
#   es-user.sh USER PASSWORD ROLE ROLE_YAML_FILE
#
# ROLE_YAML_FILE holds the role's body in roles.yml syntax (cluster:, indices:), without
# the role name; it is appended to the node's roles.yml under ROLE.
set -euo pipefail

_log_prefix=es-user
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($# == 4)) || die "usage: es-user.sh USER PASSWORD ROLE ROLE_YAML_FILE"
user=$1 password=$2 role=$3 body=$4
[[ -f $body ]] || die "no role file $body"
BASE=$(es_base_dir)
ES_HOME="$BASE/elasticsearch-$ES_VERSION"
CONF="$(es_run_dir)/config"
[[ -d $CONF ]] || die "no Elasticsearch run dir $CONF: start it with ES_SECURITY=true es-up.sh"

RUN_AS=()
if is_root; then
	RUN_AS=(runuser -u "$ES_USER" --)
fi
{
	printf '%s:\n' "$role"
	sed 's/^/  /' "$body"
} >>"$CONF/roles.yml"
if ((${#RUN_AS[@]})); then
	chown "$ES_USER:$ES_USER" "$CONF/roles.yml"
fi
env_cmd=(env -u JAVA_HOME "ES_HOME=$ES_HOME" "ES_PATH_CONF=$CONF" "ES_JAVA_HOME=${ES_JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}")
"${RUN_AS[@]}" "${env_cmd[@]}" "$ES_HOME/bin/elasticsearch-users" userdel "$user" >/dev/null 2>&1 || true
"${RUN_AS[@]}" "${env_cmd[@]}" "$ES_HOME/bin/elasticsearch-users" useradd "$user" -p "$password" -r "$role" >&2
log "added file-realm user $user with role $role on port $ES_PORT"
