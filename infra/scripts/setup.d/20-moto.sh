# moto server: SNS, SQS, SES v2, S3 and Secrets Manager on 127.0.0.1:5000,
# for the AWS adapter and pipeline tests (they fail without it).
FG_MOTO_PORT=${FG_MOTO_PORT:-5000}
command -v moto_server >/dev/null || pip_install 'moto[server]>=5,<6'
moto_server -H 127.0.0.1 -p "$FG_MOTO_PORT" >"$FG_STACK/moto.log" 2>&1 &
FG_PIDS+=($!)
wait_port "moto" "$FG_MOTO_PORT" "$FG_STACK/moto.log"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$FG_MOTO_PORT"
