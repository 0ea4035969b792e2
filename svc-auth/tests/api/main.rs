mod docs;
mod helpers;
mod ready;
mod signin;
mod signout;
mod signup;
mod tokens;
