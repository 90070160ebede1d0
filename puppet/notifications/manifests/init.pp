# @summary The notification delivery service: the app, and one queue worker
#   process per queue and per shard under supervisord or systemd.
#
# The worker configuration is rendered by the app itself
# (`manage.py render_deployment`, tested in tests/integration/test_deployment.py),
# so this module keeps no second copy of it that could drift.
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
#   }
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
class notifications (
  Sensitive[String[1]] $secret_key,
  Sensitive[String[1]] $database_url,
  Sensitive[String[1]] $rabbitmq_url = Sensitive('amqp://guest:guest@127.0.0.1:5672/'),
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
) {
  $venv = "${app_dir}/.venv"
  $exec_path = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']

  contain notifications::app
  contain notifications::workers

  Class['notifications::app'] -> Class['notifications::workers']
}
