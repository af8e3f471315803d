"""Test helpers shared by the Python test folders: strict peers for services that cannot run here."""
