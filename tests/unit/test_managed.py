"""What a container runtime made survives a configuration file that does
not name it (reload, --config at start)."""
from __future__ import annotations

from vswitch.config import parse_switch
from vswitch.managed import keep_managed


def cfg(data):
    return parse_switch({"bridge": data})


def test_runtime_bridges_and_ports_are_carried_over():
    current = cfg({
        "docker": {"external_ids": {"docker-network-id": "n1", "docker-owned": "true"},
                   "port": {"vp1": {"external_ids": {"docker-endpoint-id": "e1"}}}},
        "mine": {"port": {"a": {}, "vc1": {"netns": "/proc/1/ns/net",
                                          "external_ids": {"cni-container-id": "c"}}}},
        "gone": {"port": {"b": {}}},
        "shared": {"port": {"vc2": {"external_ids": {"cni-container-id": "d"}}, "x": {}}},
    })
    new = cfg({"mine": {"port": {"z": {}}}})
    out = keep_managed(current, new)
    assert set(out.bridges) == {"docker", "mine", "shared"}
    assert out.bridges["docker"] == current.bridges["docker"]
    assert set(out.bridges["mine"].ports) == {"z", "vc1"}            # the file's, and theirs
    assert set(out.bridges["shared"].ports) == {"vc2"}               # only theirs is kept
    assert "gone" not in out.bridges                                 # the user's, dropped


def test_the_file_wins_where_it_names_the_same_thing():
    current = cfg({"br": {"port": {"vc1": {"tag": 5,
                                          "external_ids": {"cni-container-id": "c"}}}}})
    new = cfg({"br": {"port": {"vc1": {"tag": 7}}}})
    assert keep_managed(current, new).bridges["br"].ports["vc1"].tag == 7
    assert keep_managed(None, new) == new
