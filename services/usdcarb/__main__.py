from usdcarb.cli import main

raise SystemExit(main())
