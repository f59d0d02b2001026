"""Front ends (console command and ASE calculator) and the engine they share."""
