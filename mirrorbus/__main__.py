from mirrorbus.cli import main

main()
