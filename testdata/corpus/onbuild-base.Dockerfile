FROM ruby:3.3
RUN bundle config --global frozen 1
WORKDIR /usr/src/app
ONBUILD COPY Gemfile Gemfile.lock ./
ONBUILD RUN bundle install
ONBUILD COPY . .
ONBUILD RUN <<EOF
bundle exec rake assets:precompile || true
EOF
LABEL org.opencontainers.image.source="https://example.invalid/ruby-base" \
      org.opencontainers.image.description="Ruby base with ONBUILD triggers"
MAINTAINER "kiln tests <kiln@example.invalid>"
