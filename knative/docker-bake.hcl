# Every function image from the one Dockerfile at the repository root.
#   docker buildx bake -f knative/docker-bake.hcl                      # all, local tag
#   REGISTRY=ghcr.io/you TAG=0.2.0 docker buildx bake -f knative/docker-bake.hcl --push
#   docker buildx bake -f knative/docker-bake.hcl ingest               # one
# The image name ends in the function's name; the Knative Services
# (knative/base) use dev.local/covid-realtime/<function>:0.1.0.

variable "REGISTRY" {
  default = "dev.local/covid-realtime"
}

variable "TAG" {
  default = "0.1.0"
}

group "default" {
  targets = ["ingest", "grpc-writer", "redis-sub", "aggregate", "dashboard-api"]
}

target "_function" {
  context    = "."
  dockerfile = "Dockerfile"
  platforms  = ["linux/amd64"]
}

target "ingest" {
  inherits = ["_function"]
  args     = { FUNCTION = "ingest" }
  tags     = ["${REGISTRY}/ingest:${TAG}"]
}

target "grpc-writer" {
  inherits = ["_function"]
  args     = { FUNCTION = "grpc-writer" }
  tags     = ["${REGISTRY}/grpc-writer:${TAG}"]
}

target "redis-sub" {
  inherits = ["_function"]
  args     = { FUNCTION = "redis-sub" }
  tags     = ["${REGISTRY}/redis-sub:${TAG}"]
}

target "aggregate" {
  inherits = ["_function"]
  args     = { FUNCTION = "aggregate" }
  tags     = ["${REGISTRY}/aggregate:${TAG}"]
}

target "dashboard-api" {
  inherits = ["_function"]
  args     = { FUNCTION = "dashboard-api", ASSETS = "dashboard" }
  tags     = ["${REGISTRY}/dashboard-api:${TAG}"]
}
