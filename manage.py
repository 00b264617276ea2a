#!/usr/bin/env python
"""Django's command-line utility."""

import os
import sys

if __name__ == "__main__":
    if sys.version_info < (3, 12):  # noqa: UP036 - a clear message when run with the wrong Python
        sys.exit("wfdash needs Python 3.12 or newer (Django 6.1); use the venv: .venv/bin/python manage.py ...")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wfdash.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
