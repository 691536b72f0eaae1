FROM scratch
ARG VERSION
COPY api.txt /api.txt
LABEL com.example.version=$VERSION
