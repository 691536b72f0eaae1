# A developer's or CI job's overrides, merged after docker-bake.json: tags
# are replaced, labels merged key by key, and a function names the images.
function "image" {
  params = [name]
  result = "${REGISTRY}/svc/${name}:${VERSION}-${lower(substr(sha256(name), 0, 7))}"
}

target "api" {
  tags   = [image("api")]
  labels = { "com.example.tier" = "api" }
}
