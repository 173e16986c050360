function [Y,Xf,Af] = feedforward_input_skip(X,~,~)
%FEEDFORWARD_INPUT_SKIP neural network simulation function.
%
% Written by tools/make_matlab_fixtures.py in the format MATLAB's genFunction writes, with the
% weights of a net the script defines: not MATLAB's own output (no MATLAB is available here).
%
% [Y] = feedforward_input_skip(X,~,~) takes these arguments:
%
%   X = 1xTS cell, 1 inputs over TS timesteps
%   Each X{1,ts} = 3xQ matrix, input #1 at timestep ts.
%
% and returns:
%   Y = 1xTS cell of 1 outputs over TS timesteps.
%   Each Y{1,ts} = 2xQ matrix, output #1 at timestep ts.
%
% where Q is number of samples (or series) and TS is the number of timesteps.

%#ok<*RPMT0>

% ===== NEURAL NETWORK CONSTANTS =====

% Input 1
x1_step1.xoffset = [-0.3579995906032454;-0.1960487495744343;1.812578143608286];
x1_step1.gain = [2.316262580115812;2.310675276400315;0.523095816228997];
x1_step1.yoffset = [0.0];

% Layer 1
b1 = [-0.41650291568349673;0.6658843666307874;0.15341269354192133;-0.7320625678794588];
IW1_1 = [0.010428707050219164 0.1557505636911067 -0.9882570200131586;-0.8179424840546843 0.6691417949908389 1.1176442553245627;0.5231057023348268 -0.6151306410298985 0.1836948412466974;0.3143261193821215 -1.1438107675293765 -1.2529291179705215];

% Layer 2
b2 = [0.7453799516283968;-0.8992360808538964;0.5658607898359915];
LW2_1 = [0.03621418704184126 1.0927576049632624 -1.0449499131042133 0.15562039724477467;-1.0906453602508168 0.3696677493931687 -0.4183989438253976 0.6021250280797623;0.60368488977573 -0.7644850993862353 -0.4856715555000558 -0.5325503630198278];

% Layer 3
b3 = [0.4592678392348988;0.582160495258399];
IW3_1 = [-0.592832861460363 0.23364160156387356 -0.6841501534172044;0.7191757094158521 0.15769664476042278 -0.11401297944584664];
LW3_2 = [0.2939019449847461 0.43524234302142795 -1.322895397308243;1.5104322228222895 -0.09786859088567575 0.2073739335155306];

% Output 1
y1_step1.xoffset = [-1.5440413558946622;-1.7635839817154295];
y1_step1.gain = [0.8149283432441741;0.34776346752198156];
y1_step1.ymin = [-1.0];

% ===== SIMULATION ========

% Format Input Arguments
isCellX = iscell(X);
if ~isCellX
  X = {X};
end

% Dimensions
TS = size(X,2); % timesteps
if ~isempty(X)
  Q = size(X{1},2); % samples/series
else
  Q = 0;
end

% Allocate Outputs
Y = cell(1,TS);

% Time loop
for ts=1:TS

    % Input 1
    Xp1 = mapstd_apply(X{1,ts},x1_step1);
    
    % Layer 1
    a1 = tansig_apply(repmat(b1,1,Q) + IW1_1*Xp1);
    
    % Layer 2
    a2 = logsig_apply(repmat(b2,1,Q) + LW2_1*a1);
    
    % Layer 3
    a3 = repmat(b3,1,Q) + IW3_1*Xp1 + LW3_2*a2;
    
    % Output 1
    Y{1,ts} = mapminmax_reverse(a3,y1_step1);
end

% Final Delay States
Xf = cell(1,0);
Af = cell(3,0);

% Format Output Arguments
if ~isCellX
  Y = cell2mat(Y);
end
end

% ===== MODULE FUNCTIONS ========

% Map Standard Deviation and Mean Input Processing Function
function y = mapstd_apply(x,settings)
  y = bsxfun(@minus,x,settings.xoffset);
  y = bsxfun(@times,y,settings.gain);
  y = bsxfun(@plus,y,settings.yoffset);
end

% Sigmoid Symmetric Transfer Function
function a = tansig_apply(n,~)
  a = 2 ./ (1 + exp(-2*n)) - 1;
end

% Sigmoid Positive Transfer Function
function a = logsig_apply(n,~)
  a = 1 ./ (1 + exp(-n));
end

% Map Minimum and Maximum Output Reverse-Processing Function
function x = mapminmax_reverse(y,settings)
  x = bsxfun(@minus,y,settings.ymin);
  x = bsxfun(@rdivide,x,settings.gain);
  x = bsxfun(@plus,x,settings.xoffset);
end

