# The action's image: the action and the server program it puts into the MLflow image, both static
# binaries on a minimal base. GitHub runs container actions as root (it must write $GITHUB_OUTPUT).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
COPY main.go ./
COPY internal ./internal
COPY server ./server
ENV CGO_ENABLED=0 GOOS=linux GOARCH=amd64
RUN go build -trimpath -ldflags="-s -w" -o /out/deploy-mlflow . && \
    go build -trimpath -ldflags="-s -w" -o /out/deploy-mlflow-server ./server

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/deploy-mlflow /usr/local/bin/deploy-mlflow
COPY --from=build /out/deploy-mlflow-server /usr/local/share/deploy-mlflow/deploy-mlflow-server
USER 0:0
ENTRYPOINT ["/usr/local/bin/deploy-mlflow"]
