"""Ansible plugins that Tidegate's own runs load (by path, from ansible.cfg): never imported by Tidegate."""
