"""People who sign in to the pages: accounts, roles, passwords, OpenID Connect, sessions."""
