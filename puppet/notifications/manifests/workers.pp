# @summary The service's processes under supervisord or systemd: one worker per
#   queue and shard, the web app (gunicorn), the outbox relays and the Expo
#   receipts checker; and optionally the Prometheus scrape configuration.
#
# `manage.py render_deployment` writes the configuration; its `--check` makes
# the exec idempotent, so processes are restarted only when the configuration
# really changed (queues, shard count, stop timeout, paths, web parameters).
# They all stop with SIGTERM: a worker finishes and acknowledges its batch,
# gunicorn the requests in flight, then they exit.
#
# Deploying new code does not change the configuration: restart them from
# your release process (`supervisorctl restart 'notification-workers:*'` or
# `systemctl restart notification-workers.target`).
class notifications::workers {
  $app_dir = $notifications::app_dir
  $manager = $notifications::process_manager
  $queues  = $notifications::queues

  $queue_args = $queues.empty ? {
    true    => '',
    default => " --queues ${queues.join(' ')}",
  }
  $render = join([
    "${notifications::venv}/bin/python ${app_dir}/manage.py render_deployment",
    "--shards ${notifications::mobile_notifications_shards}",
    "--stop-wait-seconds ${notifications::stop_wait_seconds}",
    "--app-dir ${app_dir}",
    "--venv ${notifications::venv}",
    "--log-dir ${notifications::log_dir}",
    "--settings-module ${notifications::settings_module}",
    "--user ${notifications::user}",
    "--env-file ${notifications::env_file}",
    "--metrics-base-port ${notifications::metrics_base_port}",
    "--metrics-host ${notifications::metrics_host}",
    "--web-bind ${notifications::web_bind}",
    "--web-workers ${notifications::web_workers}",
    "--web-threads ${notifications::web_threads}",
    "--outbox-relays ${notifications::outbox_relays}",
    "--expo-receipts-seconds ${notifications::expo_receipts_seconds}",
    $notifications::web ? { true => '', default => '--no-web' },
  ].filter |$arg| { !$arg.empty }, ' ')

  case $manager {
    'supervisord': {
      $output = '/etc/supervisor/conf.d'
      package { 'supervisor':
        ensure => installed,
      }
      service { 'supervisor':
        ensure  => running,
        enable  => true,
        require => Package['supervisor'],
      }
      $reload = 'supervisorctl reread && supervisorctl update'
      $render_requires = [Package['supervisor']]
      $reload_requires = [Service['supervisor']]
    }
    'systemd': {
      $output = '/etc/systemd/system'
      # Stopping the target stops every notification-worker@ instance (PartOf=),
      # including shards that are no longer rendered; starting it starts the listed ones.
      $reload = 'systemctl daemon-reload && systemctl stop notification-workers.target && systemctl start notification-workers.target'
      $render_requires = []
      $reload_requires = []
      service { 'notification-workers.target':
        ensure  => running,
        enable  => true,
        require => Exec['notifications reload workers'],
      }
    }
    default: {
      fail("notifications: unknown process_manager ${manager}")
    }
  }

  exec { 'notifications render workers':
    path        => $notifications::exec_path,
    command     => "${render}${queue_args} --format ${manager} --output ${output}",
    unless      => "${render}${queue_args} --format ${manager} --output ${output} --check",
    cwd         => $app_dir,
    environment => ["DJANGO_SETTINGS_MODULE=${notifications::settings_module}"],
    require     => $render_requires,
    notify      => Exec['notifications reload workers'],
  }

  # The scrape targets come from the same render as the programs: same queues,
  # shards and ports. Prometheus picks a changed file up on its next reload.
  if $notifications::prometheus_scrape_dir {
    $scrape_dir = $notifications::prometheus_scrape_dir
    exec { 'notifications render prometheus':
      path        => $notifications::exec_path,
      command     => "${render}${queue_args} --format prometheus --output ${scrape_dir}",
      unless      => "${render}${queue_args} --format prometheus --output ${scrape_dir} --check",
      cwd         => $app_dir,
      environment => ["DJANGO_SETTINGS_MODULE=${notifications::settings_module}"],
    }
  }

  exec { 'notifications reload workers':
    path        => $notifications::exec_path,
    command     => $reload,
    refreshonly => true,
    provider    => shell,
    timeout     => $notifications::stop_wait_seconds + 120,
    require     => $reload_requires,
  }
}
