FROM node:20-alpine
WORKDIR /usr/src/app
COPY package*.json ./
RUN --mount=type=secret,id=npmrc,target=/root/.npmrc \
    --mount=type=ssh \
    npm ci --production
RUN --mount=type=secret,id=aws,env=AWS_SECRET_ACCESS_KEY,required=true \
    --network=none \
    node scripts/check-env.js
COPY --chown=node:node . .
USER node
CMD [ "node", "index.js" ]
