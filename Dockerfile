# The cmk image for docker-compose.yml: the worker (default command) or the API service, run from TypeScript source
# with tsx as `npm start` does. Build: docker compose build (or docker build -t cmk:0.1.0 .).

# Dependencies from the lockfile, production only. The full image has the compilers a native module may need when
# no prebuilt binary matches (better-sqlite3-multiple-ciphers); the runtime image below does not.
FROM node:20.20.2-bookworm AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:20.20.2-bookworm-slim
ENV NODE_ENV=production \
    CMK_DATA_DIR=/var/lib/cmk/data \
    CMK_SECRETS_DIR=/var/lib/cmk/secrets
WORKDIR /app
# Code and dependencies belong to root and are read-only for the service user.
COPY --from=deps /app/node_modules ./node_modules
COPY . .
# Mount points of the named volumes, owned by the service user (a new volume takes over their owner and mode): the
# data dir, the secrets dir (0700, apart from the data dir), and the Lowkey Vault certificate exported for
# NODE_EXTRA_CA_CERTS.
RUN mkdir -p /var/lib/cmk/data /var/lib/cmk/secrets /run/cmk/lowkey-vault-ca \
 && chown node:node /var/lib/cmk/data /var/lib/cmk/secrets /run/cmk/lowkey-vault-ca \
 && chmod 0700 /var/lib/cmk/data /var/lib/cmk/secrets \
 && chmod 0755 /run/cmk/lowkey-vault-ca
# The official image's unprivileged user (uid 1000).
USER node
EXPOSE 8787 9464
# The worker's memory bounds, as `npm start` gives them (stack/worker-process.ts; CMK_WORKER_HEAP_MB there): at most two
# malloc arenas, a 256 MB old space and 8 MB semi-spaces (docs/PERFORMANCE.md, "Worker memory").
ENV MALLOC_ARENA_MAX=2
CMD ["node", "--max-old-space-size=256", "--max-semi-space-size=8", "--import", "tsx", "worker/main.ts"]
