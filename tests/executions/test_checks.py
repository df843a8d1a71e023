from executions.checks import check_queue_timeout_exceeds_longest_run


def test_default_settings_pass_the_queue_timeout_check():
    assert check_queue_timeout_exceeds_longest_run(None) == []


def test_queue_timeout_shorter_than_longest_run_is_flagged(settings):
    settings.RUN_TIMEOUT_MAX_SECONDS = 7200
    warnings = check_queue_timeout_exceeds_longest_run(None)
    assert [w.id for w in warnings] == ["executions.W001"]


def test_retry_not_above_timeout_is_flagged(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "retry": settings.Q_CLUSTER["timeout"]}
    assert check_queue_timeout_exceeds_longest_run(None)[0].id == "executions.W001"
