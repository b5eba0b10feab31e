"""The auth service: users, their public profiles, and the tokens they sign in with."""
