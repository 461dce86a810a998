"""The platform around the loaders, on engines that already exist.

    config_store.py    versioned configs per project/group/service in etcd: push, list, rollback
    config_changes.py  what a new version changes: applied live, through a reload, or at restart
    config_source.py   a host's start-up version: from etcd, else the copy cached on disk
    config_watch.py    a serving host follows its group's current version and applies it
    gateway/           ``aiges gateway``: HAProxy in front of every registered host

The config centre plays the part of the AI platform's Polaris; the gateway that of its WebGate.
"""
