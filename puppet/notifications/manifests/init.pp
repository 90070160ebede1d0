# @summary The notification delivery service: the app, and under supervisord or
#   systemd one queue worker process per queue and per shard, the web app
#   (gunicorn), the outbox relays and the Expo receipts checker.
#
# The process configuration, and optionally the Prometheus scrape
# configuration, are rendered by the app itself (`manage.py render_deployment`,
# tested in tests/unit and tests/integration/test_deployment.py), so this module
# keeps no second copy of them that could drift.
#
# The code is expected in $app_dir (checked out by your release process); this
# module builds its virtualenv, migrates the database and runs the workers.
#
# @example
#   class { 'notifications':
#     mobile_notifications_shards => 4,
#     secret_key                  => Sensitive(lookup('notifications::secret_key')),
#     database_url                => Sensitive('mysql://notifications:...@db.internal:3306/notifications'),
#     rabbitmq_url                => Sensitive('amqp://notifications:...@mq.internal:5672/'),
#     push_token_keys             => Sensitive(lookup('notifications::push_token_keys')),
#     push_token_hash_key         => Sensitive(lookup('notifications::push_token_hash_key')),
#     secrets                     => Sensitive(lookup('notifications::secrets')),  # a hash, see below
#   }
#
# Every secret comes from the caller (hiera with eyaml, or another secret
# store), never from this module or the repository: `./manage.py
# generate_secrets --env-file FILE` makes fresh SECRET_KEY and token keys, and
# deploy/production.env.example lists every setting production needs.
#
# @param push_token_keys
#   PUSH_TOKEN_KEYS: Fernet keys for push tokens at rest, newest first (comma-separated).
# @param push_token_hash_key
#   PUSH_TOKEN_HASH_KEY: the HMAC key of token lookups.
# @param secrets
#   Every other setting, by its environment name, written to the env file:
#   provider credentials (APNS_*, FCM_SERVICE_ACCOUNT_FILE, EXPO_ACCESS_TOKEN),
#   the bouncer (PUSH_BOUNCER_URL, PUSH_BOUNCER_SERVER_UUID, PUSH_BOUNCER_API_KEY),
#   SMTP (EMAIL_HOST, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, ...), SMS
#   (SMS_BACKEND, SMS_ACCOUNT_SID, SMS_AUTH_TOKEN, ...) and REDIS_URL.
#
# @param queues
#   Queues to run workers for, without their shards. Empty: every queue with a
#   registered worker (`./manage.py process_queue --list`).
# @param mobile_notifications_shards
#   Shards of missedmessage_mobile_notifications: N > 1 runs one worker per
#   shard (`..._shard1..N`). Also written to the environment of the app, since
#   publishers and workers must agree on it.
# @param stop_wait_seconds
#   How long a worker may take to finish and acknowledge its batch after SIGTERM
#   before it is killed (supervisord stopwaitsecs, systemd TimeoutStopSec).
# @param process_manager
#   'supervisord' or 'systemd'.
# @param web
#   Run the web app (gunicorn zerver.wsgi:application) on this host.
# @param web_bind, web_workers, web_threads
#   gunicorn's --bind, --workers and --threads. Keep one worker (scale threads,
#   or hosts) unless Prometheus multiprocess mode is set up: each gunicorn
#   worker process has its own metrics.
# @param outbox_relays
#   How many `outbox_relay` processes publish the events stored while RabbitMQ
#   was down (they share the work); 0: none on this host.
# @param expo_receipts_seconds
#   `check_expo_receipts --loop` period; 0: not on this host (one host is enough).
# @param metrics_base_port
#   Worker i of `process_queue --list` serves /metrics on this + i; 0: none.
# @param metrics_host
#   The host name Prometheus scrapes this host's workers and web app at.
# @param prometheus_scrape_dir
#   If set, render notifications-scrape.yml (the web app's and every worker's
#   metrics target) into this directory, for Prometheus' scrape_config_files.
class notifications (
  Sensitive[String[1]] $secret_key,
  Sensitive[String[1]] $database_url,
  Sensitive[String[1]] $rabbitmq_url,
  Sensitive[String[1]] $push_token_keys,
  Sensitive[String[1]] $push_token_hash_key,
  Sensitive[Hash[Pattern[/\A[A-Z_][A-Z0-9_]*\z/], String]] $secrets = Sensitive({}),
  Array[Pattern[/\A[A-Za-z0-9_.-]+\z/]] $queues = [],
  Integer[1] $mobile_notifications_shards = 1,
  Integer[1] $stop_wait_seconds = 60,
  Enum['supervisord', 'systemd'] $process_manager = 'supervisord',
  Stdlib::Absolutepath $app_dir = '/srv/notifications',
  Stdlib::Absolutepath $log_dir = '/var/log/notifications',
  Stdlib::Absolutepath $env_file = '/etc/notifications/env',
  Stdlib::Absolutepath $python = '/usr/bin/python3',
  String[1] $user = 'notifications',
  String[1] $settings_module = 'settings.base',
  Array[String[1]] $allowed_hosts = [$facts['networking']['fqdn']],
  Boolean $web = true,
  Pattern[/\A[A-Za-z0-9_.:\[\]\/-]+\z/] $web_bind = '127.0.0.1:8000',
  Integer[1] $web_workers = 1,
  Integer[1] $web_threads = 8,
  Integer[0] $outbox_relays = 1,
  Integer[0] $expo_receipts_seconds = 60,
  Integer[0, 65535] $metrics_base_port = 9100,
  Pattern[/\A[A-Za-z0-9_.-]+\z/] $metrics_host = 'localhost',
  Optional[Stdlib::Absolutepath] $prometheus_scrape_dir = undef,
) {
  $venv = "${app_dir}/.venv"
  $exec_path = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']

  contain notifications::app
  contain notifications::workers

  Class['notifications::app'] -> Class['notifications::workers']
}
