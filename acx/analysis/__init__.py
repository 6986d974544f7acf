"""What runs leave, read back: run folders, curves, rliable statistics and ``acx report``. No torch here."""
