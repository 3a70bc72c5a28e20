import pytest
from gradio_client import Client

from app.studio import build_demo


@pytest.fixture(scope="module")
def client():
    demo = build_demo()
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    yield Client(demo.local_url, verbose=False)
    demo.close()


def test_studio_serves_the_inventory_of_full_size_architectures(client):
    table, summary = client.predict("sdxl-turbo", "8", "8", api_name="/inventory")
    assert len(table["data"]) == 794
    assert table["headers"][:3] == ["name", "kind", "group"]
    assert "794 layers" in summary and "0.501x FP16" in summary
    table, summary = client.predict("sd-turbo", "4", "fp", api_name="/inventory")
    assert len(table["data"]) == 282 and "W4Afp" in summary
    table, summary = client.predict("embedded", "8", "8", api_name="/inventory")
    assert "embedded" in summary and any("attn2.to_k" in row[0] for row in table["data"])
