# @summary One worker process per queue and shard, under supervisord or systemd.
#
# `manage.py render_deployment` writes the configuration; its `--check` makes
# the exec idempotent, so workers are restarted only when the configuration
# really changed (queues, shard count, stop timeout, paths). Workers stop with
# SIGTERM: each finishes and acknowledges its batch, then exits 0.
#
# Deploying new code does not change the configuration: restart the workers
# from your release process (`supervisorctl restart 'notification-workers:*'`
# or `systemctl restart notification-workers.target`).
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
    "--format ${manager}",
    "--shards ${notifications::mobile_notifications_shards}",
    "--stop-wait-seconds ${notifications::stop_wait_seconds}",
    "--app-dir ${app_dir}",
    "--venv ${notifications::venv}",
    "--log-dir ${notifications::log_dir}",
    "--settings-module ${notifications::settings_module}",
    "--user ${notifications::user}",
    "--env-file ${notifications::env_file}",
  ], ' ')

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
    command     => "${render}${queue_args} --output ${output}",
    unless      => "${render}${queue_args} --output ${output} --check",
    cwd         => $app_dir,
    environment => ["DJANGO_SETTINGS_MODULE=${notifications::settings_module}"],
    require     => $render_requires,
    notify      => Exec['notifications reload workers'],
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
