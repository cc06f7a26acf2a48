from neuraltrade_cli.app import main

main()
