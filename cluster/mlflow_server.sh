#!/usr/bin/env bash
# A shared MLflow tracking server for a cluster: SQLite (or any SQLAlchemy URI) + an artifact root.
#   cluster/mlflow_server.sh [BACKEND_URI] [ARTIFACT_ROOT] [HOST] [PORT]
# Defaults listen on 127.0.0.1; pass HOST=0.0.0.0 only behind a network you trust (MLflow has no auth by default).
set -euo pipefail
backend=${1:-sqlite:///mlflow.db}
artifacts=${2:-./mlartifacts}
host=${3:-127.0.0.1}
port=${4:-5000}
exec mlflow server --backend-store-uri "$backend" --artifacts-destination "$artifacts" \
  --host "$host" --port "$port"
