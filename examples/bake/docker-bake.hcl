# The app, its worker and a debug build of the app, from one Dockerfile.
# Variables take the CI job's values of the same name; the defaults are for a
# laptop (`kiln bake --print` shows what they resolve to).
variable "CI_REGISTRY_IMAGE" { default = "registry.example.com/group/project" }
variable "CI_COMMIT_SHORT_SHA" { default = "dev" }
variable "BASE_IMAGE" { default = "debian:bookworm-slim" }

group "default" { targets = ["app", "worker", "app-debug"] }

target "_common" {
  context = "."
  args    = { BASE_IMAGE = BASE_IMAGE }
  labels  = { "org.opencontainers.image.revision" = CI_COMMIT_SHORT_SHA }
}

target "app" {
  inherits = ["_common"]
  target   = "app"
  tags     = ["${CI_REGISTRY_IMAGE}/app:${CI_COMMIT_SHORT_SHA}"]
}

target "worker" {
  inherits = ["_common"]
  target   = "worker"
  tags     = ["${CI_REGISTRY_IMAGE}/worker:${CI_COMMIT_SHORT_SHA}"]
}

target "app-debug" {
  inherits = ["app"]
  args     = { DEBUG = "1" }
  tags     = ["${CI_REGISTRY_IMAGE}/app:${CI_COMMIT_SHORT_SHA}-debug"]
}
