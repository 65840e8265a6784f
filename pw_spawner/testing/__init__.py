"""Test support for pw_spawner and for admins testing their own configuration (a pytest plugin)."""
