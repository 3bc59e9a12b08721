"""Images of the tests' own: each with an ID no node holds yet."""

from __future__ import annotations

import io
import tarfile
import uuid

from swarmproxy.local_nodes import ImageParts, image_parts, image_tar


def unique_parts() -> ImageParts:
    """A one-file image (no program in it) whose ID no node holds yet."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        data = uuid.uuid4().hex.encode()
        info = tarfile.TarInfo("marker")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return image_parts(layer.getvalue(), cmd=("/bin/cat", "/marker"))


def unique_image(tag: str) -> tuple[bytes, str]:
    """A unique image in `docker save` format, tagged `tag`, and its ID."""
    parts = unique_parts()
    return image_tar(parts, [tag]), parts.id
