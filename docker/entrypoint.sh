#!/bin/bash
# vidqueue's container entrypoint (docs/deploy.md): Docker secrets become environment variables,
# then the command runs in this process's place.
#
# For every variable NAME_FILE in the environment, NAME is exported with the content of the file
# NAME_FILE names, trailing newlines dropped: VIDQUEUE_REDIS_URL_FILE=/run/secrets/redis_url
# gives VIDQUEUE_REDIS_URL. vidqueue itself only ever reads NAME, so any setting, S3 key or
# provider key (whatever `api_key_env` names) can come from a secret this way. Exceptions: the
# variables that are file paths in their own right (below) are left as they are.
#
# A secret that cannot be read, or a NAME already set to something else as well, stops the
# container with exit code 78 (EX_CONFIG, as a worker's own configuration errors) and a message
# naming the variable. Health checks that need the settings run through it too
# (`vidqueue-entrypoint celery -A workers inspect ping ...`): `docker exec` skips the entrypoint.
set -euo pipefail

# vidqueue's own path settings and boto3's: never read as secrets.
PATH_VARIABLES=" VIDQUEUE_PROVIDERS_FILE VIDQUEUE_API_TOKENS_FILE AWS_CONFIG_FILE \
AWS_SHARED_CREDENTIALS_FILE AWS_WEB_IDENTITY_TOKEN_FILE "

fail() {
    printf 'vidqueue-entrypoint: %s\n' "$1" >&2
    exit 78
}

while IFS= read -r -d '' entry; do
    name=${entry%%=*}
    [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*_FILE$ ]] || continue
    [[ $PATH_VARIABLES == *" $name "* ]] && continue
    target=${name%_FILE}
    path=${!name}
    if [[ -n ${!target:-} ]]; then
        fail "both $target and $name are set: set only one"
    fi
    if [[ -z $path || ! -f $path || ! -r $path ]]; then
        fail "$name: cannot read the file '$path' (missing, or not readable by uid $(id -u))"
    fi
    export "$target=$(<"$path")"
done < <(env -0)

if [[ $# -eq 0 ]]; then
    fail "no command given"
fi
exec "$@"
