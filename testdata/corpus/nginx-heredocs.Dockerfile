FROM nginx:1.27-alpine
COPY <<-'EOF' /etc/nginx/conf.d/default.conf
	server {
	    listen 8080;
	    location / { root /usr/share/nginx/html; try_files $uri $uri/ /index.html; }
	}
	EOF
COPY <<EOF /usr/share/nginx/html/version.txt
built from ${CI_COMMIT_SHA:-unknown}
EOF
RUN <<EOF sh -eu
sed -i 's/^user/#user/' /etc/nginx/nginx.conf
chown -R nginx:nginx /var/cache/nginx
EOF
USER nginx
EXPOSE 8080
