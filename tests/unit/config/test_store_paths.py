"""Host-side file fields of distribute items are resolved against the recipe's folder."""

from vmbuild.config import load_recipe


def test_relative_store_paths_follow_the_recipe(tmp_path, monkeypatch):
    image = tmp_path / "parent.qcow2"
    image.write_bytes(b"x")
    (tmp_path / "recipes").mkdir()
    recipe = tmp_path / "recipes" / "r.yml"
    recipe.write_text(
        "name: x\nversion: 1.0.0\nparent: {path: ../parent.qcow2}\ndistribute:\n"
        "  - {name: share, type: directory, path: out/images}\n"
        "  - {name: remote, type: sftp, host: 127.0.0.1, user: u, path: incoming,\n"
        "     key_file: keys/id, known_hosts: keys/known_hosts}\n"
    )
    monkeypatch.chdir(tmp_path)  # not the recipe's folder
    share, remote = load_recipe(recipe, check_components=False).distribute
    assert share["path"] == str(tmp_path / "recipes" / "out" / "images")
    assert remote["key_file"] == str(tmp_path / "recipes" / "keys" / "id")
    assert remote["known_hosts"] == str(tmp_path / "recipes" / "keys" / "known_hosts")
    assert remote["path"] == "incoming"  # remote folder: left alone
