"""Metadata in listed photos: the stored photo carries no GPS position and stands upright, and a
photo without metadata is stored byte for byte."""

from __future__ import annotations

import io

import httpx
from PIL import Image
from quart.testing import QuartClient

from tests.webapp.conftest import upload

GPS_IFD = 0x8825


ORIENTATION = 0x0112


def _jpeg_with_exif(orientation: int, size: tuple[int, int] = (120, 80)) -> bytes:
    """A landscape JPEG, red at the top, carrying a GPS position and an EXIF orientation."""
    image = Image.new("RGB", size, (20, 20, 220))
    image.paste((230, 20, 20), (0, 0, size[0], size[1] // 4))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "N"
    gps[2] = (51.0, 30.0, 12.5)
    gps[3] = "W"
    gps[4] = (0.0, 7.0, 39.9)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=95)
    return buffer.getvalue()


async def _stored_photo(client: QuartClient, auth: dict[str, str], data: bytes) -> bytes:
    response = await upload(client, data, auth)
    assert response.status_code == 202, await response.get_data(as_text=True)
    url = (
        await (await client.get(f"/api/items/{(await response.get_json())['id']}", headers=auth)).get_json()
    )["image_url"]
    async with httpx.AsyncClient() as http:
        fetched = await http.get(url)
    assert fetched.status_code == 200
    return fetched.content


async def test_stored_photos_carry_no_gps_and_stand_upright(client: QuartClient, auth: dict[str, str]) -> None:
    original = _jpeg_with_exif(orientation=6)
    with Image.open(io.BytesIO(original)) as sent:
        assert sent.getexif().get_ifd(GPS_IFD)  # the upload really carries a position
    served = await _stored_photo(client, auth, original)
    assert b"PhoneMaker" not in served
    with Image.open(io.BytesIO(served)) as image:
        assert not image.getexif().get_ifd(GPS_IFD)
        assert ORIENTATION not in image.getexif()
        assert "exif" not in image.info
        # Orientation 6: the camera was turned a quarter clockwise; upright, the red top edge
        # of the sensor image is on the right and the photo is portrait.
        assert image.size == (80, 120)
        rgb = image.convert("RGB")
        right, left = rgb.getpixel((75, 60)), rgb.getpixel((5, 60))
    assert isinstance(right, tuple) and isinstance(left, tuple)
    assert right[0] > 150 and right[2] < 100, right
    assert left[2] > 150 and left[0] < 100, left


async def test_photos_without_metadata_are_stored_byte_for_byte(
    client: QuartClient, auth: dict[str, str]
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 30)).save(buffer, format="PNG")
    assert await _stored_photo(client, auth, buffer.getvalue()) == buffer.getvalue()
