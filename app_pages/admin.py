"""Admin: every user's workspace, and the limits for everyone and for one user. Admins only."""

import streamlit as st

from imgcls.ui import admin
from imgcls.ui.common import widgets

st.title("Admin")
admin.require_admin()  # the menu shows this page to admins only, but its address reaches anyone
widgets.show_flash()

st.subheader("Users")
admin.show_users()

st.subheader("Limits for everyone")
admin.default_limits_controls()

st.subheader("Limits for one user")
admin.user_limits_controls()

st.subheader("Jobs")
admin.show_jobs()
