# @summary The app: its user, secrets file, virtualenv, requirements and database schema.
#
# Every step is idempotent: the venv is created once, the requirements are
# installed when requirements/base.txt changes, and migrations run only when
# `migrate --check` says some are unapplied.
class notifications::app {
  $app_dir  = $notifications::app_dir
  $venv     = $notifications::venv
  $user     = $notifications::user
  $env_file = $notifications::env_file

  # Unwrapped for the template only; the file's content is Sensitive again.
  $secret_key   = $notifications::secret_key.unwrap
  $database_url = $notifications::database_url.unwrap
  $rabbitmq_url = $notifications::rabbitmq_url.unwrap
  $push_token_keys = $notifications::push_token_keys.unwrap
  $push_token_hash_key = $notifications::push_token_hash_key.unwrap
  $secrets = $notifications::secrets.unwrap
  $settings_module = $notifications::settings_module
  $mobile_notifications_shards = $notifications::mobile_notifications_shards
  $allowed_hosts = $notifications::allowed_hosts.join(',')
  ([$secret_key, $database_url, $rabbitmq_url, $push_token_keys, $push_token_hash_key, $allowed_hosts]
    + $secrets.values).each |$value| {
    if $value =~ /['\n]/ {
      fail('notifications: secrets and hosts cannot contain single quotes or newlines (env file quoting)')
    }
  }

  # python3-venv for the venv; the MariaDB headers and a compiler for mysqlclient.
  ensure_packages(['python3', 'python3-venv', 'libmariadb-dev', 'pkg-config', 'build-essential'])

  group { $user:
    ensure => present,
    system => true,
  }
  user { $user:
    ensure => present,
    system => true,
    gid    => $user,
    home   => $app_dir,
    shell  => '/usr/sbin/nologin',
  }

  file { $notifications::log_dir:
    ensure => directory,
    owner  => $user,
    group  => $user,
    mode   => '0750',
  }
  file { dirname($env_file):
    ensure => directory,
    owner  => 'root',
    group  => $user,
    mode   => '0750',
  }
  file { $env_file:
    ensure  => file,
    owner   => 'root',
    group   => $user,
    mode    => '0640',
    content => Sensitive(template('notifications/env.erb')),
  }

  exec { 'notifications venv':
    path    => $notifications::exec_path,
    command => "${notifications::python} -m venv ${venv}",
    creates => "${venv}/bin/python",
    require => Package['python3-venv'],
  }

  # The stamp holds the checksum of the requirements last installed.
  exec { 'notifications requirements':
    path     => $notifications::exec_path,
    command  => "${venv}/bin/pip install -q -r requirements/base.txt && sha256sum requirements/base.txt > ${venv}/.requirements.sha",
    unless   => "sha256sum -c --status ${venv}/.requirements.sha",
    cwd      => $app_dir,
    provider => shell,
    timeout  => 1800,
    require  => [Exec['notifications venv'], Package['libmariadb-dev', 'pkg-config', 'build-essential']],
  }

  exec { 'notifications migrate':
    path     => $notifications::exec_path,
    command  => "set -a && . ${env_file} && ${venv}/bin/python manage.py migrate --noinput",
    unless   => "set -a && . ${env_file} && ${venv}/bin/python manage.py migrate --check",
    cwd      => $app_dir,
    provider => shell,
    timeout  => 1800,
    require  => [Exec['notifications requirements'], File[$env_file]],
  }

  # The admin's CSS and JS, which the web app serves itself (WhiteNoise) from var/static.
  exec { 'notifications collectstatic':
    path     => $notifications::exec_path,
    command  => "set -a && . ${env_file} && ${venv}/bin/python manage.py collectstatic --noinput -v 0",
    cwd      => $app_dir,
    provider => shell,
    require  => [Exec['notifications requirements'], File[$env_file]],
  }
}
