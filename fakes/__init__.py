"""Wire-faithful local fakes of the notification providers (APNs, FCM, Expo, SMTP, SMS); see fakes.runner."""
