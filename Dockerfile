# syntax=docker/dockerfile:1.7
# One image, three programs: `prethrift serve` (API), `prethrift worker`, `prethrift console`.
# Build: docker build -t prethrift .  (GPU variant: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG CLIP_MODEL=ViT-B-32
ARG CLIP_PRETRAINED=laion2b_s34b_b79k
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/opt/hf
WORKDIR /src
# Every version comes from the lock file (pip constraints, `==` pins), as in CI: prod never
# picks up a release that the tests did not see.
COPY requirements.lock ./
# torch from the PyTorch index first: the CPU wheel is a fraction of the default CUDA build.
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" -c requirements.lock \
        "torch>=2.4,<2.15" "torchvision<0.30"
COPY . .
# No Pulumi SDKs (the `infra` extra): the console's Cost page reads the plan the deploy
# recorded (s3://IMAGES_BUCKET/deploy/plan-<stack>.json) instead of running the program.
RUN pip install --no-cache-dir -c requirements.lock .
# Weights baked into the image: tasks start warm and never reach the model hub.
RUN python -c "import open_clip; open_clip.create_model_and_transforms('${CLIP_MODEL}', pretrained='${CLIP_PRETRAINED}')" \
    && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE} AS runtime
ARG CLIP_MODEL=ViT-B-32
ARG CLIP_PRETRAINED=laion2b_s34b_b79k
RUN groupadd --system --gid 10001 prethrift \
    && useradd --system --uid 10001 --gid prethrift --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin prethrift
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/hf /opt/hf
# Read-only root filesystem friendly: nothing writes outside /tmp (mount a tmpfs there).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/opt/hf \
    HF_HUB_OFFLINE=1 \
    PYTHONPATH=/app \
    TMPDIR=/tmp \
    MPLCONFIGDIR=/tmp \
    PRETHRIFT_HOST=0.0.0.0 \
    PRETHRIFT_PORT=8000 \
    PRETHRIFT_CLIP_MODEL=${CLIP_MODEL} \
    PRETHRIFT_CLIP_PRETRAINED=${CLIP_PRETRAINED}
WORKDIR /app
# infra/ (the plan's data shapes and price table, no Pulumi) and the stack files (the
# console's stack list), side by side as in the repository.
COPY --chown=root:root infra/ /app/infra/
COPY --chown=root:root Pulumi.yaml Pulumi.dev.yaml Pulumi.prod.yaml /app/
USER 10001:10001
EXPOSE 8000 8050
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PRETHRIFT_PORT', '8000'), timeout=3)"]
ENTRYPOINT ["prethrift"]
CMD ["serve"]
