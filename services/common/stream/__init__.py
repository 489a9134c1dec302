"""The stream core shared by risk and notify: one commit path, deadlines as data."""
