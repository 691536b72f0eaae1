FROM scratch
COPY migrations.sql /migrations.sql
