# Aura Router: slim, non-root, ledger in /data.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DATA_DIR=/data PORT=3000 HOST=0.0.0.0
WORKDIR /app
COPY pyproject.toml README.md ./
COPY router ./router
COPY actors ./actors
RUN pip install --no-cache-dir . && useradd --system --uid 10001 aura \
    && mkdir -p /data && chown aura /data
USER aura
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"3000\")}/health', timeout=2)"
ENTRYPOINT ["aura-router"]
CMD ["serve"]
