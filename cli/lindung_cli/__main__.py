from lindung_cli.main import app

app()
