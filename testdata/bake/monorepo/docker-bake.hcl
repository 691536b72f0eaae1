# A monorepo's images from one Dockerfile: an app, a worker, and the app's
# debug and slim variants, all on one base stage. The registry, tag and base
# image come from the environment, as in a CI job.
variable "REGISTRY" { default = "registry.example.com" }
variable "TAG" { default = "dev" }
variable "BASE_IMAGE" { default = "busybox" }

group "default" { targets = ["app", "worker"] }
group "all" { targets = ["default", "variants"] }

target "_common" {
  context    = "."
  dockerfile = "Dockerfile"
  args       = { BASE_IMAGE = BASE_IMAGE }
  labels     = { "org.opencontainers.image.source" = "https://gitlab.example.com/team/shop" }
}

target "app" {
  inherits = ["_common"]
  target   = "app"
  tags = [
    "${REGISTRY}/shop/app:${TAG}",
    notequal("dev", TAG) ? "${REGISTRY}/shop/app:latest" : "",
  ]
}

target "worker" {
  inherits = ["_common"]
  target   = "worker"
  tags     = ["${REGISTRY}/shop/worker:${TAG}"]
}

target "variants" {
  name     = "app-${variant}"
  matrix   = { variant = ["debug", "slim"] }
  inherits = ["app"]
  args     = { VARIANT = variant }
  tags     = ["${REGISTRY}/shop/app:${TAG}-${variant}"]
}
