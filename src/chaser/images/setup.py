"""The image cache as the server's settings make it: registries, limits, the cache owner."""

from __future__ import annotations

import json
import logging
import shutil

from chaser.config import Settings
from chaser.images.owner import Owner
from chaser.images.registry import RegistryClient, RegistryConfig, basic_credentials
from chaser.images.store import ImageLimits, ImageStore
from chaser.runtime.image_roots import prepare_plan

log = logging.getLogger("chaser.images")


def registry_config(settings: Settings) -> RegistryConfig:
    """Mirrors, insecure registries and credentials from the settings. A credentials
    file that cannot be read is an error at start, not a surprise at the first pull."""
    credentials: dict[str, tuple[str, str]] = {}
    if settings.registry_auth_file is not None:
        try:
            data = json.loads(settings.registry_auth_file.read_text())
        except (OSError, ValueError) as e:
            raise RuntimeError(f"cannot read the registry credentials file "
                               f"{settings.registry_auth_file}: {e}") from None
        credentials = basic_credentials(data if isinstance(data, dict) else {})
        log.info("registry credentials configured for %d registries", len(credentials))
    return RegistryConfig(mirrors=tuple(settings.registry_mirrors),
                          insecure=frozenset(settings.insecure_registries),
                          allowed=frozenset(settings.allowed_registries),
                          credentials=credentials)


def image_store(settings: Settings, owner_uid: int) -> ImageStore:
    cache_mb = settings.image_cache_mb
    if cache_mb is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        cache_mb = shutil.disk_usage(settings.data_dir).total // 4 >> 20
    limits = ImageLimits(max_image_bytes=settings.max_image_mb << 20, cache_bytes=cache_mb << 20,
                         pull_timeout_s=float(settings.image_pull_timeout_s),
                         tenant_share=settings.tenant_share)
    return ImageStore(settings.images_dir, Owner(owner_uid),
                      RegistryClient(registry_config(settings)), limits, prepare_plan())
