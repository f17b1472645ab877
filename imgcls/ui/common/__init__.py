"""What every page shares: navigation, session state, text escaping, errors, the job view, widgets."""
