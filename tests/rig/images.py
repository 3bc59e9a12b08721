"""Images of the tests' own: each with an ID no node holds yet."""

from __future__ import annotations

import io
import tarfile
import uuid

from swarmproxy.local_nodes import ImageParts, busybox_rootfs_tar, image_parts, image_tar


def unique_parts(runnable: bool = False) -> ImageParts:
    """A one-file image whose ID no node holds yet; with `runnable`, busybox's programs are
    in it too, so containers of it can run."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        if runnable:
            with tarfile.open(fileobj=io.BytesIO(busybox_rootfs_tar())) as rootfs:
                for member in rootfs.getmembers():
                    tar.addfile(member, rootfs.extractfile(member) if member.isfile() else None)
        data = uuid.uuid4().hex.encode()
        info = tarfile.TarInfo("marker")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return image_parts(layer.getvalue(), cmd=("/bin/cat", "/marker"))


def unique_image(tag: str, runnable: bool = False) -> tuple[bytes, str]:
    """A unique image in `docker save` format, tagged `tag`, and its ID."""
    parts = unique_parts(runnable)
    return image_tar(parts, [tag]), parts.id
