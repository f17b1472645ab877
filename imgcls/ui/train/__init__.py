"""The Train page: settings, starting runs, the live view and the runs table."""
