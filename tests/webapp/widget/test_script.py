"""/widget.js as a shop's page loads it: JavaScript, cacheable, revalidated cheaply, and small."""

from __future__ import annotations

import gzip

from quart.testing import QuartClient

# The README states the gzipped size; past this the widget is no longer a small drop-in.
MAX_GZIPPED_BYTES = 10_000


async def test_widget_script_is_served_for_embedding(client: QuartClient) -> None:
    response = await client.get("/widget.js", headers={"Origin": "https://shop.example"})
    assert response.status_code == 200
    # Served as nosniff, a script with any other type would not run at all.
    assert response.mimetype == "text/javascript"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.cache_control.public
    assert response.cache_control.max_age == 300
    assert response.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    body = await response.get_data(as_text=False)
    assert b'customElements.define("prethrift-search"' in body
    assert len(gzip.compress(body, 9)) < MAX_GZIPPED_BYTES
    again = await client.get("/widget.js", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
