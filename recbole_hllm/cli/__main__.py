"""``python -m recbole_hllm.cli``: ``run_recbole``, as when ``recbole_hllm.cli`` was its module."""
if __name__ == "__main__":
    from recbole_hllm.old_paths import run_moved_script

    run_moved_script("recbole_hllm.cli")
