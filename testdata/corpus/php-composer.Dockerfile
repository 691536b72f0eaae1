FROM composer:2 AS vendor
COPY composer.json composer.lock ./
RUN composer install --no-dev --no-scripts --prefer-dist --no-interaction

FROM php:8.3-fpm-alpine
RUN docker-php-ext-install pdo_mysql opcache
COPY --from=vendor /app/vendor /var/www/html/vendor
COPY --chown=www-data:www-data --chmod=0644 . /var/www/html
ARG APP_ENV=production
ENV APP_ENV=${APP_ENV}
RUN [ "$APP_ENV" = "production" ] && echo "opcache.validate_timestamps=0" >> /usr/local/etc/php/conf.d/opcache.ini || true
