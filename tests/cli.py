"""Calling an entry point's main() in-process, as the CLI tests do."""


def run_main(main, argv, capsys):
    """main([str(a) for a in argv]) -> (exit code, stdout, stderr); argparse errors give code 2."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
