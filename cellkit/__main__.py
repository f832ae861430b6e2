from cellkit.cli import app

app(prog_name="python -m cellkit")
